"""The training-free warp renderer: rig motion moves a portrait's own pixels (see rendering/warp/renderer.py)."""
