"""Training's augmentation, from ``data.augment``: a torchvision v2 pipeline on uint8 CHW tensors, and the random
surroundings of face crops (:mod:`deepfake.surroundings`)."""

from __future__ import annotations

from deepfake.data.config import AugmentConfig
from deepfake.surroundings import Surroundings


def build_augment(cfg: AugmentConfig | None, size: int):
    """A torchvision v2 pipeline on uint8 CHW tensors of ``size`` pixels, or None when augmentation is off."""
    if cfg is None or not cfg.enabled:
        return None
    from torchvision.transforms import v2

    steps = []
    if cfg.crop_scale:
        # Zoom into a random part of the (already resized) image and back to full size: new framings
        # of the same face, the augmentation that curbs over-fitting most on a small dataset.
        steps.append(
            v2.RandomResizedCrop(size, scale=tuple(cfg.crop_scale), ratio=tuple(cfg.crop_ratio), antialias=True)
        )
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip(p=cfg.hflip))
    if cfg.rotation:
        steps.append(v2.RandomRotation(degrees=cfg.rotation))
    if cfg.brightness or cfg.contrast:
        steps.append(v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast))
    if cfg.jpeg_p:
        steps.append(v2.RandomApply([v2.JPEG(quality=tuple(cfg.jpeg_quality))], p=cfg.jpeg_p))
    if cfg.blur_p:
        blur = v2.GaussianBlur(kernel_size=cfg.blur_kernel, sigma=tuple(cfg.blur_sigma))
        steps.append(v2.RandomApply([blur], p=cfg.blur_p))
    return v2.Compose(steps) if steps else None


def build_surroundings(cfg: AugmentConfig | None) -> Surroundings | None:
    """Random surroundings beyond the image's edge in face crops (:mod:`deepfake.surroundings`), or None when
    augmentation is off or ``outside_p`` is 0."""
    if cfg is None or not cfg.enabled or not cfg.outside_p:
        return None
    return Surroundings(
        float(cfg.outside_p),
        zoom=tuple(cfg.outside_zoom),
        zoom_blur=tuple(cfg.outside_zoom_blur),
        crop_blur=tuple(cfg.outside_crop_blur),
        noise=tuple(cfg.outside_noise),
        memory=int(cfg.outside_memory),
    )
