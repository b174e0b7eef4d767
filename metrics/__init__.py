"""torchmetrics classes and the weights they load; import from the submodules (each pulls only its own deps):
blendshape (MouthError, AudioMouthSync, UpperFaceDynamicsDeviation, SampleDiversity, EmotionAccuracy),
fid (FrechetInceptionDistance), frechet (frechet_distance), lpips_metric (LPIPS), image_quality (psnr, SSIM), mfcc (syncnet_mfcc),
syncnet (LipSyncError, SyncNetScorer, pretrained_syncnet), video_io (read_video), face_crop (crop_faces),
face_detect (dlib detector and 68 landmarks), identity (IdentitySimilarity), face_emotion (FER2013 emotion),
landmark_distance (M-LMD, F-LMD), sharpness (CPBD), weights (resolve_weights, check_all)."""
