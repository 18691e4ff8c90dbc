# NetBox configuration for proxbox-host's test instance.
#
# Copied verbatim by tests/netbox/netbox.sh to <NETBOX_ROOT>/conf/configuration.py.
# It holds no secrets itself: secrets and the few machine-specific knobs live in
# proxbox-test.json next to it (mode 600, generated once by netbox.sh and kept so
# that API tokens stay valid across restarts and resets).
import json
from pathlib import Path

_S = json.loads((Path(__file__).resolve().parent / 'proxbox-test.json').read_text())

ALLOWED_HOSTS = ['*']

DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.postgresql',
        'NAME': _S['db_name'],
        'USER': _S['db_user'],
        'PASSWORD': _S['db_password'],
        'HOST': '127.0.0.1',
        'PORT': str(_S['db_port']),
        'CONN_MAX_AGE': 300,
        # Re-check pooled connections before reuse, so a worker that outlived a
        # database reset reconnects instead of failing one request.
        'CONN_HEALTH_CHECKS': True,
    }
}

REDIS = {
    'tasks': {
        'HOST': '127.0.0.1',
        'PORT': int(_S['redis_port']),
        'USERNAME': '',
        'PASSWORD': '',
        'DATABASE': 0,
        'SSL': False,
    },
    'caching': {
        'HOST': '127.0.0.1',
        'PORT': int(_S['redis_port']),
        'USERNAME': '',
        'PASSWORD': '',
        'DATABASE': 1,
        'SSL': False,
    },
}

SECRET_KEY = _S['secret_key']
# v2 tokens (Bearer nbt_<key>.<token>) cannot be created without a pepper.
API_TOKEN_PEPPERS = {1: _S['pepper']}

TIME_ZONE = 'UTC'
DEBUG = False

# No outbound calls of any kind: this machine only has loopback.
RELEASE_CHECK_URL = None
CENSUS_REPORTING_ENABLED = False
ISOLATED_DEPLOYMENT = True

MAX_PAGE_SIZE = 1000
PAGINATE_COUNT = 50
METRICS_ENABLED = False
LOGGING = {}

PLUGINS = ['netbox_proxbox']
PLUGINS_CONFIG = {
    'netbox_proxbox': {
        # Default in the plugin is True: every long-lived process (gunicorn, rqworker and,
        # because the `netbox` console script is not `manage.py`, every `netbox <cmd>`)
        # starts a startup-push/discovery thread, and the RQ worker schedules a
        # 1-minute "Proxmox Service Monitoring" system job. Off by default for
        # deterministic tests; PROXBOX_NETBOX_BACKGROUND_TASKS=true turns it on.
        'automatic_background_tasks': bool(_S.get('automatic_background_tasks', False)),
    },
}
