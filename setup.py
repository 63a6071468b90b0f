"""Package layout for setuptools (the metadata is in pyproject.toml).

The released-model configs stay in the repository's ``configs/`` (one source of truth, the files people edit) and
are mapped into the wheel as ``mixformerv2/configs/``, where ``--config mixformerv2_s`` finds them
(``mixformerv2.config.load.resolve_config_path``). Only the released ones ship; the training recipes under
``configs/paper`` and ``configs/quickstart`` need the repository (relative paths to runs and data).
"""
from setuptools import find_packages, setup

RELEASED_CONFIGS = ["mixformerv2_b.yaml", "mixformerv2_s.yaml", "mixvit_b_teacher.yaml"]

setup(
    packages=[*find_packages(include=["mixformerv2", "mixformerv2.*"]), "mixformerv2.configs"],
    package_dir={"mixformerv2.configs": "configs"},
    package_data={"mixformerv2": ["data/specs/*", "evaluation/*.tsv", "evaluation/*.json", "vot/*.txt"],
                  "mixformerv2.configs": RELEASED_CONFIGS},
)
