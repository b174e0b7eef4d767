"""User studies of generated videos: `dtl study create | serve | report` (blind 2AFC and MOS designs).

plan: the balanced, counterbalanced trial plan; sources: the compared methods' videos; attention: audio-shifted
check videos; models + migrations + store: the database; server + pages: the participant web application;
statistics + report: the analysis and its outputs; cli: the commands.
"""
