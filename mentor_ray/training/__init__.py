"""Training: the one epoch loop (:class:`~mentor_ray.training.trainer.Trainer`), metrics, Ray Train."""
