"""The Jupyter-free core of lamin_nb (never imports IPython, ipywidgets or jupyter_server)."""
