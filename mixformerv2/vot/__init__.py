"""Running our tracker inside the official VOT toolkit.

* ``server``: the TraX tracker process, ``python -m mixformerv2.vot --config C --checkpoint K [--device D]``
  (needs ``vot-trax`` in this interpreter: ``pip install -e '.[vot]'``);
* ``workspace``: a VOT workspace from any sequences our readers load (VOT sequence folders, a local stack,
  ``config.yaml``) and the ``trackers.ini`` entry that runs the server with this project's interpreter;
* ``toolkit``: ``vot evaluate`` / ``vot analysis`` / ``vot report`` run in the separate toolkit environment
  (``make vot-env``: ``.venv-vot/`` with the pins of ``toolkit-requirements.txt``), tracker failures turned into
  errors and the analysis JSON into numbers.

Nothing here imports the toolkit: it runs in its own environment, as a subprocess.
"""
