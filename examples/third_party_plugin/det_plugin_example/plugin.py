"""What this plugin adds to detcore: one hook implementation per component kind it offers."""

from det_plugin_example.backbone import PlainConvNet
from det_plugin_example.history_hook import LossHistoryHook
from det_plugin_example.loss import CharbonnierLoss
from detcore.hookspecs import hookimpl


@hookimpl
def detcore_register_backbones():
    return {"PlainConvNet": PlainConvNet}


@hookimpl
def detcore_register_losses():
    return {"CharbonnierLoss": CharbonnierLoss}


@hookimpl
def detcore_register_run_hooks():
    return {"LossHistoryHook": LossHistoryHook}
