"""ARKit tracks and head poses from talking videos (`dtl data extract`): dlib landmarks fitted by the rig, or
MediaPipe."""
