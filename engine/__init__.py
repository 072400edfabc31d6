"""livediff engine: timeline, scheduler, models, samplers, training."""
