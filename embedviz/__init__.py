"""embedviz: see and measure how speech models represent spoken words, layer by layer.

The library is UI-free; the Streamlit app (``streamlit_app.py``, ``pages/``) and the CLI
(``python -m embedviz``) are thin layers over it. Heavy dependencies (torch,
transformers, umap) are imported only where needed, so ``import embedviz`` is cheap.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
