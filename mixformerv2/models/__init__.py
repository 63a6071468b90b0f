"""MixFormerV2 student, MixViT teacher, the model registry and checkpoint handling."""
from .checkpoint import (CheckpointError, InitReport, init_from_pretrained, load_checkpoint, read_checkpoint,
                         remove_layers, save_checkpoint, unwrap_state_dict)
from .mixformer import MixFormerV2, MixViT, StudentOutput, TeacherOutput
from .registry import build_model, create_model, list_models, model_config, register_model
from .vit import TemplateCache, ViTBackbone


__all__ = ["CheckpointError", "InitReport", "MixFormerV2", "MixViT", "StudentOutput", "TeacherOutput",
           "TemplateCache", "ViTBackbone", "build_model", "create_model", "init_from_pretrained", "list_models",
           "load_checkpoint", "model_config", "read_checkpoint", "register_model", "remove_layers",
           "save_checkpoint", "unwrap_state_dict"]
