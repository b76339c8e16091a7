# Installed into <prefix>/etc/ipython/startup/ by the wheel (hatch shared-data): IPython runs
# it in every kernel and shell of this environment, so the lamin_nb magics need no %load_ext.
# It runs in the user namespace: one private name, deleted at the end.
# Opt out with LAMIN_NB_NO_AUTOLOAD=1 (any value but "", "0", "false", "no").
def _lamin_nb_autoload() -> None:
    import os

    if os.environ.get("LAMIN_NB_NO_AUTOLOAD", "").strip().lower() not in ("", "0", "false", "no"):
        return
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            # not through shell.extension_manager: it would record the extension as loaded,
            # and a later "%load_ext lamin_nb" would answer "already loaded"
            import lamin_nb

            lamin_nb.load_ipython_extension(shell)
    except Exception:  # noqa: BLE001 - a broken install or instance must never break a kernel
        import logging

        # quiet by default; visible with logging at DEBUG, and %load_ext lamin_nb shows it all
        logging.getLogger("lamin_nb").debug("lamin_nb autoload failed", exc_info=True)


_lamin_nb_autoload()
del _lamin_nb_autoload
