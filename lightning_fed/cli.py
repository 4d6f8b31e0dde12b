"""LightningCLI for federations.

``fit`` trains all clients round by round and tests the best round at the end; ``validate`` and ``test`` evaluate
a saved federation. The ``trainer`` section configures every client's Lightning Trainer (accelerator,
precision, loggers, ...); the ``federation`` section configures the rounds
(:class:`~lightning_fed.federation.Federation`).

Every error in the user's input ends the command with exit status 2 and one line that names the config key or
the file: a bad value, an unknown option, a YAML syntax error (with its file and line), an unusable checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import yaml
from jsonargparse import Namespace
from lightning import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_fed.checkpoint import import_class, load_checkpoint, resolve_ckpt_path
from lightning_fed.cli_messages import condense_parser_error, find_user_error, zoo_listing
from lightning_fed.errors import ConfigurationError, UserInputError, exit_with_error
from lightning_fed.federation import Federation
from lightning_fed.trainer_factory import MANAGED_ARGS
from lightning_fed.wandb_mode import configure_wandb_loggers

DESCRIPTIONS = {
    "fit": "Train the federation round by round (every client in its own Trainer), then restore the best round "
    "(federation/best.pt) and test every client: results.json holds each round's validation and that test.",
    "validate": "Validate every client of a saved federation (default: <run dir>/federation/best.pt) and write "
    "results_validate.json.",
    "test": "Test every client of a saved federation (default: <run dir>/federation/best.pt) and write "
    "results_test.json.",
}


class FederatedArgumentParser(LightningArgumentParser):
    """A LightningArgumentParser whose errors are one line naming the key, not the usage block."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:  # noqa: D102
        if not self.exit_on_error:
            super().error(message, ex)
        prog = self.prog.replace(" [options]", "")
        exit_with_error(f"{condense_parser_error(message)} (options: {prog} --help)")


class FederatedCLI(LightningCLI):
    """``LightningCLI`` whose "trainer" is a :class:`Federation` of per-client Trainers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("model_class", LightningModule)
        kwargs.setdefault("datamodule_class", LightningDataModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("parser_class", FederatedArgumentParser)
        # The federation records the config in results.json; one SaveConfigCallback per client Trainer would
        # collide. Optimizers belong to the models (each client keeps its own across rounds).
        kwargs.setdefault("save_config_callback", None)
        kwargs.setdefault("auto_configure_optimizers", False)
        listing = zoo_listing()
        parser_kwargs = {
            "description": "lightning-fed: federated recommendation with PyTorch Lightning. " + DESCRIPTIONS["fit"],
            "epilog": listing,
        }
        for name, description in DESCRIPTIONS.items():
            parser_kwargs[name] = {"description": description, "epilog": listing}
        kwargs.setdefault("parser_kwargs", parser_kwargs)
        super().__init__(*args, **kwargs)

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
        """LightningCLI's parsers, with the federation's descriptions of fit, validate and test in the listing."""
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        for action in self.parser._actions:
            for choice in getattr(action, "_choices_actions", []):
                if choice.dest in DESCRIPTIONS:
                    choice.help = DESCRIPTIONS[choice.dest]

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """fit, validate and test; only ``ckpt_path`` is taken from the Trainer methods' arguments."""
        return {
            "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule", "weights_only"},
            "validate": {"model", "dataloaders", "datamodule", "verbose", "weights_only"},
            "test": {"model", "dataloaders", "datamodule", "verbose", "weights_only"},
        }

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:  # noqa: D102
        parser.add_class_arguments(Federation, "federation")
        for action in parser._actions:
            name = action.dest.removeprefix("trainer.")
            if action.dest.startswith("trainer.") and name in MANAGED_ARGS:
                action.help = f"MANAGED BY THE FEDERATION (refused if set): use {MANAGED_ARGS[name]}"

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Check every ``--config`` file first (a YAML error names its file and line), then expand its layers."""
        given = list(sys.argv[1:] if args is None else args)
        # LightningCLI.parse_arguments without its warning about args given while sys.argv has some: the
        # expanded list is the command line's own arguments.
        self.config = parser.parse_args(expand_config_layers(given))

    def _parse_ckpt_path(self) -> None:
        # Lightning reads a single module's hyperparameters from ckpt_path here; a federation checkpoint is read
        # in before_instantiate_classes instead (restore_saved_configuration).
        return None

    def before_instantiate_classes(self) -> None:
        """Restore a saved federation's model and data configuration; route W&B (online when logged in)."""
        config = self.config.get(str(self.subcommand), self.config)
        restore_saved_configuration(str(self.subcommand), config)
        configure_wandb_loggers(config)

    def instantiate_trainer(self, **kwargs: Any) -> Federation:
        """Return the configured :class:`Federation`, holding the Trainer arguments for its clients."""
        trainer_config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        callbacks = trainer_config.get("callbacks") or []
        callbacks = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        extra = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        trainer_config["callbacks"] = callbacks + extra  # a new list: the parsed config is left as it was
        federation: Federation = self._get(self.config_init, "federation")
        config = self.config.get(str(self.subcommand), self.config)
        federation.configure_trainers(trainer_config, run_config=config.clone().as_dict())
        return federation


def _config_paths(args: list[str]) -> list[tuple[int, str]]:
    """``(index of the value, value)`` of every ``--config`` / ``-c`` argument."""
    found = []
    for i, arg in enumerate(args):
        if arg in ("-c", "--config") and i + 1 < len(args):
            found.append((i + 1, args[i + 1]))
        elif arg.startswith("--config="):
            found.append((i, arg.split("=", 1)[1]))
    return found


def is_inline_config(value: str) -> bool:
    """Whether a ``--config`` value is YAML text (as a file's own keys after its layers), not a path."""
    return value.lstrip().startswith(("{", "[")) or "\n" in value


def read_config_file(value: str) -> dict[str, Any]:
    """The mapping in config file ``value``; a missing, empty or malformed file is a one-line error with its name."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigurationError(f"--config: {value}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigurationError(f"{value}: byte {err.start} is not UTF-8 text") from None
    try:
        content = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{value}:{mark.line + 1}:{mark.column + 1}" if mark is not None else value
        raise ConfigurationError(f"{where}: YAML syntax error: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigurationError(f"{value}: YAML syntax error: {err}") from None
    if content is None:
        raise ConfigurationError(f"{value}: the config file is empty (expected sections such as trainer, model)")
    if not isinstance(content, dict):
        raise ConfigurationError(
            f"{value}: a config file holds a mapping of sections (trainer, model, data, federation), "
            f"not a {type(content).__name__}"
        )
    return content


def _layers_of(value: str, content: dict[str, Any]) -> list[str]:
    """The layers file ``value`` lists under ``config:`` (paths relative to the file), as paths."""
    layers = content.get("config")
    if layers is None:
        return []
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, list) or not all(isinstance(layer, str) for layer in layers):
        raise ConfigurationError(f"{value}: config: must list config files (paths relative to {value}), got {layers!r}")
    base = Path(value).expanduser().parent
    return [str(base / Path(layer).expanduser()) for layer in layers]


def expand_config_layers(args: list[str], seen: tuple[Path, ...] = ()) -> list[str]:
    """Replace each ``--config FILE`` that lists layers (``config: [a.yaml, b.yaml]``) by those layers, then FILE.

    ``config: [model/fmoe_cdsr.yaml, data/fkcb.yaml]`` at the top of FILE means exactly ``--config
    model/fmoe_cdsr.yaml --config data/fkcb.yaml --config FILE``: later layers override earlier ones, and FILE
    overrides its layers (paths relative to FILE; layers may list layers of their own). FILE itself is passed on
    as its content without the ``config`` key, with section files it names made relative to it.

    Every file is read here, once: a missing, empty or malformed one (or layers that include each other) is a
    one-line error naming it, before jsonargparse sees anything.

    Args:
        args: the command line.
        seen: the files whose layers are being expanded (to refuse a cycle).
    """
    expanded: list[str] = []
    positions = dict(_config_paths(args))
    for i, arg in enumerate(args):
        value = positions.get(i)
        if value is None or is_inline_config(value):
            expanded.append(arg)
            continue
        content = read_config_file(value)
        path = Path(value).expanduser().resolve()
        if path in seen:
            raise ConfigurationError(f"{value}: config layers include each other in a cycle")
        layers = _layers_of(value, content)
        if not layers:
            expanded.append(arg)
            continue
        if not arg.startswith("--config="):
            expanded.pop()  # the preceding --config flag: each layer gets its own
        for layer in layers:
            expanded.extend(expand_config_layers(["--config", layer], (*seen, path)))
        base = Path(value).expanduser().parent
        rest = {
            key: str(base / section) if isinstance(section, str) and section.endswith((".yaml", ".yml")) else section
            for key, section in content.items()
            if key != "config"
        }
        if rest:
            expanded.extend(["--config", yaml.safe_dump(rest, sort_keys=False)])
    return expanded


def restore_saved_configuration(subcommand: str, config: Namespace) -> None:
    """Take ``model`` and ``data`` from the checkpoint that ``test``, ``validate`` or a resumed ``fit`` loads.

    As with a Lightning checkpoint, the saved configuration wins, so none of the ``fit`` command's overrides has
    to be repeated. The arguments a class lists in ``reconfigurable_arguments`` (how to evaluate: ``ranking``,
    RQ4's ``eval_experts``; where the data is: ``root``, ``cache_dir``, ...) keep the user's value where the user
    set one (a value other than the class default).
    """
    run_dir = Path(config.get("trainer.default_root_dir") or Path.cwd())
    default = "best" if subcommand in ("test", "validate") else None
    path = resolve_ckpt_path(config.get("ckpt_path"), run_dir, default)
    if path is None or not path.is_file():
        return  # the federation reports a missing file with the right message
    checkpoint = load_checkpoint(path, mmap=True)  # only the saved configuration is read here
    for section in ("model", "data"):
        saved = checkpoint.get(f"{section}_config")
        given = config.get(section)
        if not isinstance(saved, dict) or "class_path" not in saved:
            continue  # an older checkpoint: the configuration as given
        init_args = dict(saved.get("init_args") or {})
        if given is not None and given.get("class_path") == saved["class_path"]:
            cls = import_class(saved["class_path"])
            defaults = _init_defaults(cls)
            reconfigurable = getattr(cls, "reconfigurable_arguments", ())
            overridden = []
            for name, value in (given.get("init_args") or Namespace()).items():
                if name in reconfigurable and name in defaults and value != defaults[name]:
                    init_args[name] = value
                elif name in init_args and value != init_args[name] and value != defaults.get(name, value):
                    overridden.append(f"{name}={init_args[name]!r} (not {value!r})")
            if overridden:
                print(
                    f"note: {section} as trained, from {path}: {', '.join(overridden)}",
                    file=sys.stderr,
                    flush=True,
                )
        elif given is not None:
            print(
                f"note: {section} restored from {path}: {saved['class_path']} (the configured "
                f"{given.get('class_path')} is not what this federation was trained with)",
                file=sys.stderr,
                flush=True,
            )
        added = _arguments_added_since(import_class(saved["class_path"]), init_args)
        if added:
            init_args.update(added)
            print(
                f"note: {section} arguments newer than {path} take their defaults (the behaviour it was trained "
                f"with): {', '.join(f'{name}={value!r}' for name, value in added.items())}",
                file=sys.stderr,
                flush=True,
            )
        config[section] = Namespace(class_path=saved["class_path"], init_args=Namespace(**init_args))


def _arguments_added_since(cls: type, saved: dict[str, Any]) -> dict[str, Any]:
    """The defaults of ``cls``'s own ``__init__`` arguments that a saved configuration does not list.

    A checkpoint written before an argument existed was trained with the behaviour the argument's default keeps,
    and LightningCLI records a module's hyperparameters from the configuration it instantiates, so the default
    must be written into that configuration: otherwise ``hparams`` lacks the name.
    """
    import inspect

    return {
        name: parameter.default
        for name, parameter in inspect.signature(cls.__init__).parameters.items()
        if name not in saved and name != "self" and parameter.default is not inspect.Parameter.empty
    }


def _init_defaults(cls: type) -> dict[str, Any]:
    import inspect

    defaults: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for name, parameter in inspect.signature(init).parameters.items():
            if parameter.default is not inspect.Parameter.empty:
                defaults[name] = parameter.default
    return defaults


def main(args: list[str] | None = None) -> FederatedCLI:
    """Entry point: ``python main.py fit --config configs/fkcb_cpu.yaml``.

    Errors in the user's data or configuration (:class:`~lightning_fed.errors.UserInputError`, also when
    jsonargparse wraps one raised in a constructor) end the process with one line and exit status 2 when run
    from the command line (``args`` is None); called with ``args`` (tests, notebooks) they propagate.
    """
    try:
        return FederatedCLI(args=args)
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None:
            raise
        if args is not None:
            raise user_error from None
        exit_with_error(str(user_error))


__all__ = ["FederatedCLI", "UserInputError", "main"]
