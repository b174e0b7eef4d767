"""Face rigs driven by the 52 ARKit blendshapes, their headless OpenGL rendering, and MP4 video writing."""
