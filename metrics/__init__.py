"""torchmetrics classes and the weights they load; import from the submodules (each pulls only its own deps):
blendshape (MouthError), fid (FrechetInceptionDistance), lpips_metric (LPIPS), image_quality (psnr, SSIM),
mfcc (syncnet_mfcc), weights (resolve_weights, check_all)."""
