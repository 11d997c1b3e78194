"""MostPop: items ranked by training popularity, the same list for every user (nothing to train)."""

from mentor_ray.common.registry import ModelEntry

ENTRY = ModelEntry(name="most_pop", display="MostPop", group="general", order=0,
                   cls="mentor_ray.model.baselines:MostPop", citation="popularity", trained=False)
