"""An MLflow pyfunc model that takes raw feature records, as the ml_assets API does, and scores
them with `ml_assets.core.scoring.score` (the same encoding and the same booster).

The `mlflow.lightgbm` flavor that training logs needs its categoricals already encoded (it
predicts on a numeric matrix); to serve raw records with `mlflow models serve`, a user wraps the
model like this. The benchmark logs it with MLflow's "models from code" (this file is copied
into the model) and serves it beside the native flavor.
"""

import mlflow
from mlflow.pyfunc import PythonModel


class RecordsModel(PythonModel):
    def load_context(self, context):
        import json
        from pathlib import Path

        from ml_assets.core.scoring import LoadedModel

        sidecar = json.loads(Path(context.artifacts["sidecar"]).read_text())
        text = Path(context.artifacts["model"]).read_text()
        self.model = LoadedModel.from_text(sidecar["model_id"], text, sidecar)

    def predict(self, context, model_input, params=None):
        from ml_assets.core.scoring import score

        return score(self.model, model_input, [])["prediction"].to_numpy()


mlflow.models.set_model(RecordsModel())
