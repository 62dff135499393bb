"""matplotlib, or the error that names the extra installing it: :mod:`attnscope.figures` imports this first.

matplotlib is an optional extra (``pip install 'attnscope[figures]'``): the HTML views, capture and the analyses
never need it, and the pictures inside the HTML views are drawn without it (:mod:`attnscope.views.picture`).
"""

from ..errors import require

require("matplotlib", "figures")
