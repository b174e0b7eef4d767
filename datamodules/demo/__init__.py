"""The SYNTHETIC demo corpus: espeak-ng speech in the MEAD layout with ARKit tracks derived from that speech."""
