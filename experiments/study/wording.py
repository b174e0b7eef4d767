"""What participants read: the consent text, the instructions and each trial's question. Nothing here may name a
method, a file or a folder: participants judge blind."""

from __future__ import annotations

DEFAULT_TITLE = "Talking-face video study"
DEFAULT_CONSENT = (
    "You are invited to take part in a study of computer-generated talking-face videos. You will watch short "
    "videos with sound and answer one question about each page. It takes about ten minutes. Taking part is "
    "voluntary; you may stop at any time by closing the page. We store only your answers and the time you "
    "spent on each page, under a random participant number, and use them for research only.")

PAIR_QUESTIONS = {
    "lip_sync": "In which video do the lips match the speech better?",
    "emotion": "Which video shows the emotion \u201c{emotion}\u201d better?",
    "realism": "Which video looks more like a real recording of a person?",
    "identity": "In which video does the person look more like the person in the reference picture?",
}
RATING_QUESTIONS = {
    "lip_sync": "How well do the lips match the speech?",
    "emotion": "How well does the face show the emotion \u201c{emotion}\u201d?",
    "realism": "How real does the video look?",
    "identity": "How much does the person look like the person in the reference picture?",
}
RATING_LABELS = ("1 bad", "2 poor", "3 fair", "4 good", "5 excellent")
RATING_RANGE = (1, 5)


def instructions(design: str) -> list[str]:
    common = ["Use headphones or speakers: every video has sound.",
              "Play each video (its play button) as often as you like before answering.",
              "Some pages check that you are paying attention; answer them as carefully as the others.",
              "You can close the page and come back later with the same link: you continue where you stopped."]
    if design == "2afc":
        return ["Each page shows two videos, A and B, and one question. Choose the video that fits the question "
                "better; if they seem equally good, choose the one you lean towards.",
                "Click A or B, or press the A or B key (the left and right arrow keys work too).", *common]
    return ["Each page shows one video and one question. Rate it from 1 (bad) to 5 (excellent).",
            "Click a rating or press the keys 1 to 5.",
            "A few pages show two videos, A and B, instead: choose the one that fits the question better (click, or "
            "press A or B).", *common]


def question(kind: str, criterion: str, emotion: str | None) -> str:
    text = (RATING_QUESTIONS if kind == "rating" else PAIR_QUESTIONS)[criterion]
    return text.format(emotion=emotion or "intended")
