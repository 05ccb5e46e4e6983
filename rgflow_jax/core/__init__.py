"""The model: geometry, the RNVP block and its fast arrangement, the flows (RG-Flow,
Real NVP), priors, the pixel transform, cones and local inference. Imports nothing
of the package's other layers."""
