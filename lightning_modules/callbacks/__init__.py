"""Lightning callbacks shared by the blendshape models."""
