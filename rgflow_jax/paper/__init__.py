"""The paper's readings of a trained flow: latents (mixing, progressive decoding,
traversal), inpainting, receptive fields, semantic factors, FID and its Inception
network, the figures."""
