"""The engine: models, initialisation, Lyapunov spectra (the tangent loop), flossing, the condition number, native kernels."""
