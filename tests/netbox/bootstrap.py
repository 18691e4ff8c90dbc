# Ensure the superuser `admin` and the two API tokens of the test instance exist.
#
# Run by tests/netbox/netbox.sh inside `netbox shell -c`; idempotent. The token
# values come from proxbox-test.json (generated once, kept across restarts), so the
# same v1/v2 tokens are valid after every `up` and `reset`. Prints nothing secret.
import json
from pathlib import Path

from django.conf import settings
from django.db import transaction
from users.models import Token, User

_s = json.loads((Path(settings.CONFIGURATION_DIR) / 'proxbox-test.json').read_text())

with transaction.atomic():
    user, created = User.objects.get_or_create(username='admin', defaults={'is_superuser': True})
    user.is_superuser = True
    user.is_active = True
    user.email = user.email or 'admin@example.invalid'
    user.set_password(_s['admin_password'])
    user.save()

    # v1: `Authorization: Token <40 hex>` (plaintext stored server-side).
    t1 = Token.objects.filter(plaintext=_s['token_v1']).first()
    if t1 is not None and (t1.user_id != user.pk or not t1.is_active or not t1.write_enabled):
        t1.delete()
        t1 = None
    if t1 is None:
        Token(user=user, version=1, token=_s['token_v1'], description='proxbox-host tests (v1)').save()

    # v2: `Authorization: Bearer nbt_<key>.<token>` (HMAC of the token with pepper 1).
    t2 = Token.objects.filter(key=_s['token_v2_key']).first()
    if t2 is not None and (
        t2.user_id != user.pk or not t2.is_active or not t2.write_enabled
        or not t2.validate(_s['token_v2_secret'])
    ):
        t2.delete()
        t2 = None
    if t2 is None:
        Token(
            user=user, version=2, key=_s['token_v2_key'], token=_s['token_v2_secret'],
            description='proxbox-host tests (v2)',
        ).save()

print(f"bootstrap: user admin {'created' if created else 'ok'}, "
      f"tokens v1+v2 ok ({Token.objects.filter(user=user).count()} tokens for admin)")
