"""Typed search spaces shared by the spec, the searchers and the results module."""

from toolkit.space.params import Categorical, Float, Int, Normal, SpaceError
from toolkit.space.parse import parse_space
from toolkit.space.space import Flat, Param, SearchSpace

__all__ = ["Categorical", "Flat", "Float", "Int", "Normal", "Param", "SearchSpace", "SpaceError", "parse_space"]
