"""`dtl study create | serve | report | migrate`: blind user studies of generated videos."""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select

from experiments.study.attention import delay_audio
from experiments.study.database import current_revision, database_url, make_engine, open_database, upgrade
from experiments.study.models import Study
from experiments.study.plan import ATTENTION_SHIFT_FRAMES, CRITERIA, DESIGNS, attention_videos, validate
from experiments.study.report import analyse
from experiments.study.report_output import log_to_wandb, write_report
from experiments.study.results import participants_of, study_answers
from experiments.study.server import create_app
from experiments.study.sources import common_clips, method_videos
from experiments.study.store import NewStudy, create_study
from experiments.study.wording import DEFAULT_CONSENT, DEFAULT_TITLE

EXAMPLES = """examples:
  dtl study create lipsync NAME_A=outputs/eval_a NAME_B=outputs/eval_b --design 2afc \\
      --criteria lip_sync realism --participants 20 --out outputs/study_lipsync
  dtl study serve --db outputs/study_lipsync --port 8000 [--root-path /study behind a reverse proxy]
  dtl study report lipsync --db outputs/study_lipsync --out outputs/study_lipsync/report
  (--db takes a study folder, an SQLite file or any SQLAlchemy URL: postgresql+psycopg://user@host/db)"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dtl study", description=__doc__, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="plan a study and write it into its database")
    create.add_argument("name", help="the study's name (letters, digits, - and _)")
    create.add_argument("methods", nargs="+", metavar="[NAME=]FOLDER",
                        help="two or more methods' videos: evaluation folders, run directories or folders of MP4s "
                             "with the same clip names")
    create.add_argument("--design", choices=DESIGNS, default="2afc")
    create.add_argument("--criteria", nargs="+", choices=CRITERIA, default=["lip_sync", "realism"])
    create.add_argument("--participants", type=int, required=True)
    create.add_argument("--seed", type=int, default=0)
    create.add_argument("--attention-checks", type=int, default=2,
                        help=f"per participant: a video against its copy with the audio {ATTENTION_SHIFT_FRAMES} "
                             f"frames late (default 2)")
    create.add_argument("--reference", type=Path,
                        help="folder of each clip's reference portrait or video (same names), for --criteria identity")
    create.add_argument("--out", type=Path, required=True,
                        help="the study folder: attention-check videos, links.csv, admin_token, study.db by default")
    create.add_argument("--db", help="SQLAlchemy URL of the database (default: OUT/study.db)")
    create.add_argument("--title", help="the title participants see")
    create.add_argument("--consent", type=Path, help="a text file with the consent text participants agree to")
    create.add_argument("--base-url", default="http://127.0.0.1:8000",
                        help="where participants will reach the server, for links.csv (with any proxy prefix)")
    create.add_argument("--group", help="W&B group the report logs to (default: study_NAME)")
    serve = commands.add_parser("serve", help="serve the participant pages, the API and the admin routes")
    serve.add_argument("--db", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--root-path", default="", help="the URL prefix a reverse proxy serves this under")
    report = commands.add_parser("report", help="analyse a study's answers: markdown, HTML, CSV, W&B")
    report.add_argument("name")
    report.add_argument("--db", required=True)
    report.add_argument("--out", type=Path, required=True)
    report.add_argument("--max-failed-checks", type=int, default=0,
                        help="exclude participants failing more attention checks than this (default 0)")
    report.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (mos)")
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed (mos)")
    report.add_argument("--no-wandb", action="store_true")
    report.add_argument("--project", help="W&B project (default: $WANDB_PROJECT or dreamtalk-lab)")
    migrate = commands.add_parser("migrate", help="upgrade a study database's schema to this version")
    migrate.add_argument("--db", required=True)
    return parser.parse_args(argv)


def stamp(command: str) -> str:
    return f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {command}"


def create(args: argparse.Namespace) -> int:
    if not args.name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"study name {args.name!r}: use letters, digits, - and _ only")
    out = args.out.resolve()
    if (out / "links.csv").exists():
        raise ValueError(f"{out}: holds a study's links.csv already; give each study its own --out folder")
    methods = [method_videos(m) for m in args.methods]
    clips = common_clips(methods)
    names = [m.name for m in methods]
    validate(args.design, names, clips, args.criteria, args.participants, args.attention_checks)
    references = {}
    if "identity" in args.criteria:
        if args.reference is None:
            raise ValueError("--criteria identity needs --reference FOLDER (each clip's reference portrait)")
        for clip in clips:
            found = sorted(args.reference.glob(f"{clip}.*"))
            if not found:
                raise ValueError(f"{args.reference}: no reference for clip {clip} ({clip}.png, .jpg or .mp4)")
            references[clip] = found[0].resolve()
    consent = args.consent.read_text().strip() if args.consent else DEFAULT_CONSENT
    shifted = {}
    for shown in sorted(attention_videos(args.participants, args.attention_checks, names, clips),
                        key=lambda s: (s.method, s.clip)):
        source = next(m for m in methods if m.name == shown.method).videos[shown.clip]
        target = out / "attention" / f"{len(shifted):04d}.mp4"
        shifted[(shown.method, shown.clip)] = delay_audio(source, target, ATTENTION_SHIFT_FRAMES)
    sessions = open_database(database_url(args.db or out), migrate=True)
    with sessions() as session:
        created = create_study(session, NewStudy(
            name=args.name, design=args.design, criteria=args.criteria, methods=methods, clips=clips,
            participants=args.participants, seed=args.seed, attention_checks=args.attention_checks, shifted=shifted,
            references=references, title=args.title or DEFAULT_TITLE, consent_text=consent,
            wandb_group=args.group or f"study_{args.name}"))
        session.commit()
    out.mkdir(parents=True, exist_ok=True)
    base = args.base_url.rstrip("/")
    with open(out / "links.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["participant", "link"])
        writer.writerows([i, f"{base}/p/{token}"] for i, token in enumerate(created.participant_tokens))
    token_file = out / "admin_token"
    token_file.write_text(created.admin_token + "\n")
    os.chmod(token_file, 0o600)
    os.chmod(out / "links.csv", 0o600)
    trials = len(clips) * len(args.criteria) * (len(names) * (len(names) - 1) // 2 if args.design == "2afc"
                                                 else len(names))
    print(f"dtl study: {args.name}: {args.design}, {len(names)} methods x {len(clips)} clips x "
          f"{len(args.criteria)} criteria = {trials} trials + {args.attention_checks} attention checks per "
          f"participant, {args.participants} participants")
    print(f"participant links: {out / 'links.csv'}; admin token: {token_file} (both secret)")
    return 0


def report(args: argparse.Namespace) -> int:
    sessions = open_database(database_url(args.db), migrate=False)
    with sessions() as session:
        study = session.scalar(select(Study).where(Study.name == args.name))
        if study is None:
            known = session.scalars(select(Study.name)).all()
            raise ValueError(f"{args.db}: no study named {args.name!r} (studies: {', '.join(known) or 'none'})")
        totals = {p.number: len(p.trials) for p in participants_of(session, study)}
        result = analyse(study.name, study.design, [m.name for m in study.methods], list(study.criteria), totals,
                         study_answers(session, study), args.max_failed_checks, args.seed, args.resamples)
        group = study.wandb_group
    command = "dtl study " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["study"] \
        else f"dtl study report {args.name}"
    paths = write_report(result, args.out, stamp(command))
    if not args.no_wandb:
        print(f"W&B run: {log_to_wandb(result, args.out, group, args.project)}")
    print(paths["markdown"].read_text())
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0


def serve(args: argparse.Namespace) -> int:
    import uvicorn


    app = create_app(database_url(args.db))
    uvicorn.run(app, host=args.host, port=args.port, root_path=args.root_path, proxy_headers=True,
                log_level="info", access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "create":
            return create(args)
        if args.command == "report":
            return report(args)
        if args.command == "migrate":

            engine = make_engine(database_url(args.db))
            upgrade(engine)
            print(f"dtl study: {args.db}: schema at revision {current_revision(engine)}")
            return 0
        return serve(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"dtl study: error: {e}", file=sys.stderr)
        return 1
