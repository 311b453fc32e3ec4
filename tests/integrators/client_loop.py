"""The whole integrator loop through a client generated from /openapi.json.

Token, device registration, pairing, a webhook, enrollment, verification, identification,
look-ups and the webhook deliveries, each response parsed into its generated model. A
response whose body holds a field its schema does not declare fails the run too (the
generated models keep such fields in `additional_properties`).

Usage: client_loop.py BASE_URL CLIENT_ID CLIENT_SECRET (the generated package on PYTHONPATH).
"""

import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from palmlink_client import AuthenticatedClient, Client, models
from palmlink_client.api.auth import get_jwks, issue_token
from palmlink_client.api.challenges import (
    create_enrollment,
    create_identification,
    create_verification,
    get_challenge,
    list_challenges,
)
from palmlink_client.api.devices import get_device, list_devices, register_device
from palmlink_client.api.ops import get_health, get_readiness
from palmlink_client.api.scanner import pair_device, poll_challenges, submit_capture
from palmlink_client.api.settings import get_matching_settings
from palmlink_client.api.users import get_user, list_users
from palmlink_client.api.webhooks import (
    create_webhook,
    get_delivery,
    get_webhook,
    list_deliveries,
    list_webhooks,
    test_webhook,
)
from palmlink_client.types import Unset

RECEIVED = []


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        RECEIVED.append((self.headers["X-Link-Event"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def no_unknown_fields(value, where):
    """Fails when a parsed model (at any depth) kept a field its schema does not declare."""
    extra = getattr(value, "additional_properties", None)
    if isinstance(extra, dict) and extra and not type(value).__name__.endswith("Metadata"):
        if not type(value).__name__.startswith(("Jwks", "EnrollmentResultFeatureIds")):
            raise AssertionError(f"{where}: fields not in the schema: {sorted(extra)}")
    if hasattr(value, "__attrs_attrs__"):
        for attr in value.__attrs_attrs__:
            if attr.name != "additional_properties":
                no_unknown_fields(getattr(value, attr.name), f"{where}.{attr.name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            no_unknown_fields(item, f"{where}[{i}]")


def expect(response, status, model, where):
    assert response.status_code == status, f"{where}: {response.status_code} {response.content!r}"
    if model is None:
        return None
    parsed = response.parsed
    assert isinstance(parsed, model), f"{where}: parsed {type(parsed).__name__}, not {model.__name__}"
    no_unknown_fields(parsed, where)
    return parsed


def palm(rng):
    return [[rng.gauss(0.0, 1.0) for _ in range(64)] for _ in range(10)]


def recapture(blocks, rng, amount=0.15):
    return [[v + rng.gauss(0.0, amount) for v in block] for block in blocks]


def capture(blocks, palm_type="right"):
    return models.CaptureSubmission(
        vendor="mock",
        captures=[
            models.CaptureItem(
                palm_type=models.Palm(palm_type),
                template=models.TemplateBody(format_=models.TemplateFormat.F32, blocks=blocks),
                quality=0.93,
                liveness=0.99,
            )
        ],
    )


def scanner_round(scanner, challenge_id, blocks):
    """The scanner side: long-poll until the challenge shows, then capture it."""
    for _ in range(20):
        polled = expect(poll_challenges.sync_detailed(client=scanner, wait_ms=2000), 200,
                        models.ScannerChallengesResponse, "poll_challenges")
        if any(str(c.challenge_id) == challenge_id for c in polled.data):
            break
    else:
        raise AssertionError(f"challenge {challenge_id} never reached the scanner")
    done = expect(submit_capture.sync_detailed(challenge_id, client=scanner, body=capture(blocks)),
                  200, models.ChallengeResponse, "submit_capture")
    assert done.data.status == models.ChallengeStatus.COMPLETED, done.data.status
    return done.data.result


def main():
    base, client_id, secret = sys.argv[1:4]
    rng = random.Random(23)
    receiver = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()

    public = Client(base_url=base)
    expect(get_health.sync_detailed(client=public), 200, models.Health, "get_health")
    expect(get_readiness.sync_detailed(client=public), 200, models.Ready, "get_readiness")
    expect(get_jwks.sync_detailed(client=public), 200, models.Jwks, "get_jwks")
    token = expect(
        issue_token.sync_detailed(client=public, body=models.TokenRequest(
            grant_type="client_credentials", client_id=client_id, client_secret=secret)),
        200, models.TokenResponse, "issue_token")
    wrong = issue_token.sync_detailed(client=public, body=models.TokenRequest(
        grant_type="client_credentials", client_id=client_id, client_secret="wrong"))
    expect(wrong, 401, models.Error, "issue_token (wrong secret)")
    api = AuthenticatedClient(base_url=base, token=token.access_token)

    device = expect(register_device.sync_detailed(client=api, body=models.RegisterDevice(
        device_name="Lobby", location="Main entrance")), 201, models.RegisteredDeviceResponse,
        "register_device").data
    invalid = register_device.sync_detailed(client=api, body=models.RegisterDevice(
        device_name="", location="x"))
    bad = expect(invalid, 422, models.ValidationError, "register_device (empty name)")
    assert bad.errors[0].field == "device_name", bad.errors
    paired = expect(pair_device.sync_detailed(client=public, body=models.PairDevice(
        pairing_code=device.pairing_code, hardware_id="hw-integrator-1")), 200,
        models.PairedDeviceResponse, "pair_device").data
    scanner = AuthenticatedClient(base_url=base, token=paired.device_secret)
    expect(get_device.sync_detailed(device.device_id, client=api), 200, models.DeviceResponse, "get_device")
    expect(list_devices.sync_detailed(client=api, limit=100), 200, models.DevicePage, "list_devices")

    hook = expect(create_webhook.sync_detailed(client=api, body=models.NewWebhook(
        name="integrator", events=[models.EventKey.ENROLLMENT_COMPLETE,
                                   models.EventKey.VERIFICATION_COMPLETE,
                                   models.EventKey.IDENTIFICATION_COMPLETE],
        endpoint=f"http://127.0.0.1:{receiver.server_port}/hook")), 201,
        models.WebhookWithSecretResponse, "create_webhook").data
    assert hook.signing_secret.startswith("whsec_")
    expect(get_webhook.sync_detailed(hook.webhook_id, client=api), 200, models.WebhookResponse, "get_webhook")
    expect(list_webhooks.sync_detailed(client=api), 200, models.WebhookPage, "list_webhooks")

    person = palm(rng)
    enroll = expect(create_enrollment.sync_detailed(client=api, body=models.Enrollment(
        external_user_id="emp-1", hardware_id="hw-integrator-1", palm_type=models.Palm.RIGHT)), 201,
        models.ChallengeResponse, "create_enrollment").data
    enrolled = scanner_round(scanner, str(enroll.challenge_id), person)
    assert isinstance(enrolled, models.EnrollmentResult), type(enrolled)

    verify = expect(create_verification.sync_detailed(client=api, body=models.Verification(
        external_user_id="emp-1", hardware_id="hw-integrator-1")), 201,
        models.ChallengeResponse, "create_verification").data
    verified = scanner_round(scanner, str(verify.challenge_id), recapture(person, rng))
    assert isinstance(verified, models.VerificationResult), type(verified)
    assert verified.matched and len(verified.scores) == 10, verified

    identify = expect(create_identification.sync_detailed(client=api, body=models.IdentifyChallenge(
        hardware_id="hw-integrator-1", top_k=3)), 201, models.ChallengeResponse,
        "create_identification").data
    identified = scanner_round(scanner, str(identify.challenge_id), recapture(person, rng))
    assert isinstance(identified, models.IdentificationResult), type(identified)
    assert identified.candidates[0].external_user_id == "emp-1", identified.candidates

    got = expect(get_challenge.sync_detailed(verify.challenge_id, client=api), 200,
                 models.ChallengeResponse, "get_challenge").data
    assert isinstance(got.result, models.VerificationResult), type(got.result)
    expect(list_challenges.sync_detailed(client=api), 200, models.ChallengePage, "list_challenges")
    user = expect(get_user.sync_detailed("emp-1", client=api), 200, models.UserResponse, "get_user").data
    assert [p.palm_type for p in user.palms] == [models.PalmType.RIGHT], user.palms
    expect(list_users.sync_detailed(client=api), 200, models.UserPage, "list_users")
    expect(get_matching_settings.sync_detailed(client=api), 200, models.SettingsResponse,
           "get_matching_settings")

    deadline = time.time() + 30
    while len(RECEIVED) < 3 and time.time() < deadline:
        time.sleep(0.1)
    kinds = sorted(kind for kind, _ in RECEIVED)
    assert kinds == ["enrollment.complete", "identification.complete", "verification.complete"], kinds
    test = expect(test_webhook.sync_detailed(hook.webhook_id, client=api), 202,
                  models.DeliveryResponse, "test_webhook").data
    page = expect(list_deliveries.sync_detailed(hook.webhook_id, client=api), 200,
                  models.DeliveryPage, "list_deliveries")
    assert page.total >= 4, page.total
    expect(get_delivery.sync_detailed(hook.webhook_id, test.delivery_id, client=api), 200,
           models.DeliveryResponse, "get_delivery")
    missing = get_user.sync_detailed("nobody", client=api)
    expect(missing, 404, models.Error, "get_user (unknown)")
    assert not isinstance(token.scope, Unset)
    print(json.dumps({"ok": True, "webhook_events": kinds}))


if __name__ == "__main__":
    main()
