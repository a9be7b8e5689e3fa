"""The chapters' experiment code: problems, harnesses, models and figures' data.

The library (the modules at the top of :mod:`companion`: estimators,
reparameterizations, Gumbel, control variates, device, validation, statistics)
is what a practitioner imports. This subpackage holds what one chapter of the
book needs to run its experiments. Code here may import the library; the
library never imports from here (``tests/test_layout.py`` checks it).
"""
