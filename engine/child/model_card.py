"""A model card the Hugging Face Hub understands, for every saved model (`runs/<id>/model`).

Child side (huggingface_hub stays out of the parent): the training process writes the card
with the model it saves; `python -m engine.card push RUN_DIR REPO_ID` (what `hbt-tui push` runs)
writes it again from the run's latest evaluation and uploads the folder.

Written with `huggingface_hub`'s `ModelCard` / `ModelCardData` / `EvalResult`: the Hub's
`model-index` metadata holds every evaluated dataset, language, setting and metric of the run's
latest evaluation; the text says what was trained on what (and under which licence), the
strategy in words, the base model, the spec, and how to load it with sentence-transformers.
`push` uploads the folder for users with a network.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.contract.arms import STRATEGIES, ZERO_SHOT_WORDS, arm_name
from engine.contract.errors import RunError
from engine.contract.layout import SETTING_NAMES, RunFolder, read_json
from engine.contract.model_names import hub_unreachable

DATASETS = {   # what the Hub knows each benchmark as, and its licence
    "xquad-r": ("google-research-datasets/lareqa (XQuAD-R)", "cc-by-sa-4.0"),
    "mlqa-r": ("google-research-datasets/lareqa (MLQA-R)", "cc-by-nc-4.0"),
    "miracl": ("miracl/miracl", "apache-2.0"), "hf:miracl": ("miracl/miracl", "apache-2.0"),
}


def strategy_words(spec: dict, arm) -> str:
    """The training strategy in a sentence (α where it is the strategy's setting)."""
    if arm.kind == "zero-shot":
        return ZERO_SHOT_WORDS
    strategy = STRATEGIES.get((spec.get("sampling") or {}).get("strategy", "hybrid"))
    if strategy is None:
        return arm.label
    return strategy.words + (f" (α = {arm.alpha:g})" if strategy.alpha_is_a_setting else "")


def eval_results(folder: RunFolder):
    """One EvalResult per dataset × language (and macro) × setting × metric of the latest evaluation."""
    from huggingface_hub import EvalResult

    found = []
    for dataset in folder.evaluated_datasets():
        results = read_json(folder.results(dataset)) or {}
        name, _ = DATASETS.get(dataset, (dataset, None))
        rows = [(language, row.get("settings") or {}) for language, row in (results.get("per_language") or {}).items()]
        rows.append(("macro", results.get("macro") or {}))
        for language, settings in rows:
            for setting, metrics in settings.items():
                for metric, value in (metrics or {}).items():
                    if isinstance(value, (int, float)):
                        found.append(EvalResult(
                            task_type="text-retrieval", task_name=f"{SETTING_NAMES.get(setting, setting)} retrieval",
                            dataset_type=dataset, dataset_name=name, dataset_config=language,
                            dataset_split=f"{setting} (step {results.get('step', 0)})", metric_type=metric,
                            metric_value=float(value), metric_name=f"{metric} ({setting}, {language})"))
    return found


def card_text(spec: dict, record: dict) -> str:
    arm = arm_name(spec)
    encoder = (spec.get("encoder") or {}).get("name", "?")
    train = spec.get("train") or {}
    dataset, licence = DATASETS.get(str(train.get("dataset")), (str(train.get("dataset")), "see the dataset"))
    strategy = strategy_words(spec, arm)
    prefixes = spec.get("encoder") or {}
    return "\n".join([
        f"# {spec.get('name', record.get('id', 'model'))}", "",
        f"A multilingual dense retriever fine-tuned with hbt-tui from `{encoder}` on "
        f"{dataset} (licence {licence}) with {strategy}: {train.get('steps')} steps of batch {train.get('batch_size')}, "
        f"learning rate {train.get('lr')}, seed {train.get('seed')}, {arm.label}.", "",
        "## Use", "", "```python", "from sentence_transformers import SentenceTransformer", "",
        "encoder = SentenceTransformer(\"PATH_OR_REPO\")",
        f"queries = encoder.encode([\"Wer war der erste Kaiser?\"], prompt={json.dumps(prefixes.get('query_prefix', 'query: '))})",
        f"passages = encoder.encode([\"Augustus war der erste römische Kaiser.\"], "
        f"prompt={json.dumps(prefixes.get('passage_prefix', 'passage: '))})", "```", "",
        "Scores are cosine similarities of the mean-pooled, L2-normalised embeddings. The evaluation "
        "results (the card's `model-index`) are those of the run's latest evaluation, per language and "
        "setting (monolingual, cross-lingual, multilingual).", "",
        "## Training spec", "", "```json", json.dumps(spec, indent=1, ensure_ascii=False), "```", "",
        f"Run `{record.get('id', '')}`, commit `{record.get('git_commit', '')}`.", ""])


def write_model_card(folder: RunFolder, into: Path | None = None) -> Path | None:
    """README.md in the run's model folder, or in `into` (the folder the model is being saved in);
    None when there is no model."""
    from huggingface_hub import ModelCard, ModelCardData

    into = into or folder.model
    if not into.is_dir():
        return None
    spec, record = read_json(folder.spec) or {}, read_json(folder.record) or {}
    train = spec.get("train") or {}
    _, licence = DATASETS.get(str(train.get("dataset")), (None, None))
    data = ModelCardData(language=sorted({language for dataset in folder.evaluated_datasets() for language in
                                          (read_json(folder.results(dataset)) or {}).get("languages", [])}) or None,
                         license=licence if licence and licence.startswith("cc-") else None,
                         library_name="sentence-transformers", pipeline_tag="sentence-similarity",
                         base_model=str((spec.get("encoder") or {}).get("name", "")) or None,
                         tags=["hbt-tui", "multilingual-retrieval", arm_name(spec).kind],
                         datasets=[str(train.get("dataset"))], model_name=str(spec.get("name") or folder.id),
                         eval_results=eval_results(folder) or None)
    card = ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + card_text(spec, record))
    path = into / "README.md"
    card.save(str(path))
    return path


def push(folder: RunFolder, repo_id: str, private: bool = False) -> str:
    """Upload the model folder (card included) to the Hub; one line when that cannot be done."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise RunError(f"{repo_id!r} is not a Hub repo id: {str(error).splitlines()[0]}") from None
    if not folder.model.is_dir():
        raise RunError(f"run {folder.id} has no saved model ({folder.model} is missing)")
    if not folder.evaluated_datasets():
        raise RunError(f"run {folder.id} has no evaluation: its model card would have no results "
                       "(hbt-tui evaluate RUN first)")
    if not get_token():
        raise RunError("not logged in to the Hugging Face Hub: `huggingface-cli login` (or HF_TOKEN), then push again")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    reason = hub_unreachable(endpoint)
    if reason:
        raise RunError(f"the Hugging Face Hub ({endpoint}) cannot be reached: {reason}")
    write_model_card(folder)
    api = HfApi()
    network: tuple[type[BaseException], ...] = (OSError, ValueError)       # the hub's HTTP errors are OSErrors
    try:
        import httpx

        network += (httpx.HTTPError,)
    except ImportError:
        pass
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder.model), repo_id=repo_id, commit_message=f"hbt-tui run {folder.id}")
    except network as error:
        raise RunError(f"push {folder.id} to {repo_id}: {type(error).__name__}: {str(error).splitlines()[0][:300]}") from None
    return f"pushed {folder.id} to https://huggingface.co/{repo_id}"
