# Loads the lamin_nb magics in every IPython kernel. Opt out with LAMIN_NB_NO_AUTOLOAD=1.
def _lamin_nb_autoload() -> None:
    import os

    if os.environ.get("LAMIN_NB_NO_AUTOLOAD"):
        return
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.extension_manager.load_extension("lamin_nb")
    except Exception:  # a broken install or instance must never break kernel start
        pass


_lamin_nb_autoload()
del _lamin_nb_autoload
