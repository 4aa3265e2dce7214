"""How people sign in to the platform's Airflow: Entra ID (Azure AD) through FAB's OAuth.

Mounted as the api-server's webserver_config.py (`ariel platform render` puts it into the chart's
`apiServer.apiServerConfig`), read by the FAB auth manager. The tenant and the app registration
come from the environment file (`sign_in`), the client secret from the Secret it names. People get
Airflow roles from the app registration's app roles (Airflow.Admin, Airflow.Op, Airflow.User,
Airflow.Viewer), synced at every sign-in; someone without a role signs in with no permissions.
"""

import os

from flask_appbuilder.security.manager import AUTH_OAUTH

TENANT = os.environ["ARIEL_ENTRA_TENANT_ID"]
AUTHORITY = os.environ.get("ARIEL_ENTRA_AUTHORITY", "https://login.microsoftonline.com").rstrip("/")

AUTH_TYPE = AUTH_OAUTH
AUTH_USER_REGISTRATION = True  # a person's account is made at their first sign-in
AUTH_USER_REGISTRATION_ROLE = "Public"  # no permissions until an app role grants some
AUTH_ROLES_SYNC_AT_LOGIN = True  # a role removed in Entra ID is removed here at the next sign-in
AUTH_ROLES_MAPPING = {
    "Airflow.Admin": ["Admin"],
    "Airflow.Op": ["Op"],
    "Airflow.User": ["User"],
    "Airflow.Viewer": ["Viewer"],
}
OAUTH_PROVIDERS = [
    {
        "name": "azure",  # FAB reads the user's name, email and app roles from Entra's id_token
        "icon": "fa-windows",
        "token_key": "access_token",
        "remote_app": {
            "client_id": os.environ["ARIEL_ENTRA_CLIENT_ID"],
            "client_secret": os.environ["ARIEL_ENTRA_CLIENT_SECRET"],
            "api_base_url": f"{AUTHORITY}/{TENANT}/oauth2",
            "client_kwargs": {"scope": "openid email profile"},
            "request_token_url": None,
            "access_token_url": f"{AUTHORITY}/{TENANT}/oauth2/v2.0/token",
            "authorize_url": f"{AUTHORITY}/{TENANT}/oauth2/v2.0/authorize",
            "jwks_uri": f"{AUTHORITY}/{TENANT}/discovery/v2.0/keys",
        },
    }
]
