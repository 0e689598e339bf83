"""The controller's handling of what sites send back, on real NVFlare objects (no engine needed)."""

import pytest
from nvflare.apis.client import Client
from nvflare.apis.controller_spec import ClientTask, Task
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply

from feddcg.flare.controller import FedDCGController
from feddcg.flare.messages import evaluate_reply, evaluate_request, train_reply, train_request
from feddcg.methods.feddcg import build_prompts
from feddcg.server import ServerState
from feddcg.site import Site

from conftest import small_config


@pytest.fixture(scope="module")
def replies(tmp_path_factory, backbone):
    cfg = small_config()
    server = ServerState(cfg, build_prompts(cfg, backbone).state_dict())
    site = Site(cfg, "site-2", tmp_path_factory.mktemp("cache"))
    train, _ = train_reply(site, train_request(server.payload("A", 0), "A", 0, 0))
    evaluation = evaluate_reply(site, evaluate_request(server.global_state, 0))
    return train, evaluation


def deliver(callback, site: str, result: Shareable):
    client_task = ClientTask(Client(site, "token"), Task("train", Shareable()))
    client_task.result = result
    callback(client_task, FLContext())
    assert client_task.result is None  # results are not kept in the task history


def test_good_results_are_collected_and_failures_left_out(replies):
    train, _ = replies
    controller = FedDCGController()
    deliver(controller._on_train_result, "site-2", train)
    deliver(controller._on_train_result, "site-3", make_reply(ReturnCode.EXECUTION_EXCEPTION))
    deliver(controller._on_train_result, "site-4", Shareable())  # OK return code but no DXO inside
    assert list(controller._updates) == ["site-2"]
    assert controller._updates["site-2"].domain_index == 0 and controller._updates["site-2"].num_samples > 0


def test_evaluation_counts_are_collected(replies):
    _, evaluation = replies
    controller = FedDCGController()
    deliver(controller._on_evaluate_result, "site-2", evaluation)
    deliver(controller._on_evaluate_result, "site-5", make_reply(ReturnCode.TASK_ABORTED))
    assert list(controller._counts) == ["site-2"]
    assert all(c <= t for c, t in controller._counts["site-2"].values())


def test_late_results_are_dropped(replies):
    train, _ = replies
    controller = FedDCGController()
    controller.process_result_of_unknown_task(Client("site-9", "token"), "train", "id", train, FLContext())
    assert controller._updates == {}
