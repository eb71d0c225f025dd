"""DDPM++ (continuous, VP SDE) on `photo_crops`: 16x16 colour crops of scikit-learn's two
bundled photographs (photos.py; nothing downloaded), so that --mode colorize runs out of the
box: train, then colour the gray of held-out test crops.

    python main.py --config configs/vp/photo_crops_ddpmpp_continuous.py --workdir runs/photos --mode train
    python main.py --config configs/vp/photo_crops_ddpmpp_continuous.py --workdir runs/photos --mode colorize

The colorize JSON reports chroma_rmse (per-pixel RMSE of the two chroma channels of the
orthonormal colour decoupling, against the true crop) beside chroma_rmse_mean_colour (the
gray crop with the training split's mean chroma).

Tiny variant (seconds; configs/tiny.py):

    python main.py --config configs/vp/photo_crops_ddpmpp_continuous.py:tiny --workdir runs/tiny_vp_photo_crops_ddpmpp_continuous --mode train
"""
from configs import tiny
from configs.vp import digits_ddpmpp_continuous


def get_config(arg: str | None = None):
  config = digits_ddpmpp_continuous.get_config()   # the demo's small DDPM++, at 16x16x3
  config.data.dataset = 'photo_crops'
  config.data.image_size = 16
  config.data.num_channels = 3
  config.data.random_flip = True
  config.model.attn_resolutions = (4,)
  config.training.n_iters = 3000
  config.training.snapshot_freq = 3000
  config.training.snapshot_sampling = False
  config.sampling.num_images = 64       # of the 120 test crops
  config.sampling.num_steps = 500
  return tiny.variant(config, arg)
