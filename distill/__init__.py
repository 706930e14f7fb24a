"""sobolev-distill: distil Atari policies into small students with Sobolev Training.

The Sobolev core (:mod:`distill.sobolev`) knows nothing about Atari; the rest of the
package records teacher datasets, trains students and evaluates them.
"""

__version__ = "0.1.0"
