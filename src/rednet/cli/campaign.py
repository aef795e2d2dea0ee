"""``rednet campaign``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from rednet.cli.flags import command_line


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``rednet campaign data|run|unpack``: the GPU lease (rednet.campaign)."""
    from rednet.campaign import DEFAULT_JOBS, JOBS, CampaignConfig

    p = sub.add_parser("campaign", help="the GPU lease: pack the images, train on the device, unpack")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    c = what.add_parser("data", help="copy the training and validation images to carry (lossless)")
    c.add_argument("-o", "--output", type=Path, default=Path(".campaign/data"), help="default .campaign/data")
    c.add_argument("--data-root", help="where the images are (default $REDNET_DATA or ../shared/datasets)")
    c.set_defaults(run=cmd_campaign)
    c = what.add_parser("run", help="on the lent device: smoke-test, train every job at once, bench")
    c.add_argument("--jobs", default=",".join(DEFAULT_JOBS), help=f"comma-separated, of {', '.join(JOBS)}")
    c.add_argument("--out", type=Path, required=True, help="folder whose files come back ($OUT)")
    defaults = CampaignConfig()
    for field in dataclasses.fields(CampaignConfig):
        if field.name in ("jobs", "out"):
            continue
        flag = "--" + field.name.replace("_", "-")
        value = getattr(defaults, field.name)
        if isinstance(value, bool):
            c.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=value, help=f"default {value}"
            )
        else:
            c.add_argument(flag, type=type(value), default=value, help=f"default {value}")
    c.set_defaults(run=cmd_campaign)
    c = what.add_parser("unpack", help="the files a lease brought back: run folders into runs/")
    c.add_argument("folder", type=Path, help="the folder of NAME.tar, campaign.json, bench.json")
    c.add_argument("--runs", type=Path, default=Path("runs"), help="where the run folders go (default runs)")
    c.set_defaults(run=cmd_campaign)
    c = what.add_parser("report", help="markdown tables of a lease (its campaign.json and bench.json)")
    c.add_argument("folder", type=Path, help="the folder of campaign.json and bench.json")
    c.set_defaults(run=cmd_campaign)


def cmd_campaign(args: argparse.Namespace) -> int:
    from rednet import campaign, lease
    from rednet.data import data_root

    if args.what == "data":
        print(json.dumps(campaign.pack_data(data_root(args.data_root), args.output), indent=2))
    elif args.what == "unpack":
        print(json.dumps(lease.unpack(args.folder, args.runs), indent=2))
    elif args.what == "report":
        bench = args.folder / "bench.json"
        summary = json.loads((args.folder / "campaign.json").read_text())
        print(lease.render_lease(summary, json.loads(bench.read_text()) if bench.is_file() else None))
    else:
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(campaign.CampaignConfig)}
        values["jobs"] = tuple(j.strip() for j in args.jobs.split(",") if j.strip())
        values["out"] = str(args.out)
        config = campaign.CampaignConfig(**values)
        try:
            campaign.run_campaign(config, command=command_line(args.argv))
        except RuntimeError as e:  # every job failed: campaign.log has their reasons
            print(f"rednet: error: {e}", file=sys.stderr)
            return 1
    return 0
