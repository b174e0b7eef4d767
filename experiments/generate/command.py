"""`dtl generate blendshapes` (ARKit Live Link Face CSV) and `dtl generate video` (a portrait speaking, MP4)."""

from __future__ import annotations

import argparse

from experiments.generate import blendshapes, video


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dtl generate", description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    blendshapes.add_parser(sub)
    video.add_parser(sub)
    ns = parser.parse_args(argv)
    if not ns.emotion and ns.emotion_schedule is None:
        parser.error("give --emotion EMOTION [EMOTION ...] (or a mixture such as happy:0.6,surprised:0.4) or "
                     "--emotion-schedule FILE")
    if ns.emotion and ns.emotion_schedule is not None:
        parser.error("give --emotion or --emotion-schedule, not both")
    if not ns.audio and not ns.audio_list and not getattr(ns, "audio_dir", None):
        parser.error("give --audio FILE [FILE ...], --audio-list LIST" + (" or --audio-dir DIR" if ns.what == "video"
                                                                           else ""))
    return ns.func(ns)
