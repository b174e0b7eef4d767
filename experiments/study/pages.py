"""The participant's HTML page: a shell that static/study.js fills from the JSON API (consent, instructions, one
trial at a time, progress, completion code)."""

from __future__ import annotations

import html


def participant_page(title: str, api_base: str, static_base: str) -> str:
    t, api, static = html.escape(title), html.escape(api_base, quote=True), html.escape(static_base, quote=True)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{t}</title>
<link rel="stylesheet" href="{static}/study.css">
</head>
<body data-api="{api}">
<header><h1>{t}</h1>
<div id="progress-box" hidden>
<progress id="progress" max="1" value="0"></progress> <span id="progress-text"></span></div>
</header>
<main id="main"><p>Loading&hellip;</p></main>
<noscript>This study needs JavaScript.</noscript>
<script src="{static}/study.js"></script>
</body>
</html>
"""
