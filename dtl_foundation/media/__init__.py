"""Audio and video in and out through one ffmpeg (imageio-ffmpeg), face detection, landmarks and crops."""
