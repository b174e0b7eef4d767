"""torchmetrics classes; import from the submodules (each pulls only its own deps):
blendshape (MouthError, AudioMouthSync, UpperFaceDynamicsDeviation, SampleDiversity, EmotionAccuracy),
fid (FrechetInceptionDistance), frechet (frechet_distance), lpips_metric (LPIPS), image_quality (psnr, SSIM),
syncnet (LipSyncError, SyncNetScorer, pretrained_syncnet), identity (IdentitySimilarity), face_emotion (FER2013
emotion), landmark_distance (M-LMD, F-LMD), sharpness (CPBD), mouth_motion (the renderer's jaw probe).
The media they read (video decoding, MFCC, face detection and crops) and their weights registry live in
dtl_foundation."""
