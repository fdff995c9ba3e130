"""Azure entry file next to host.json (the Functions host requires this name): registers the blueprints."""

import azure.functions as func

from functions_azure import blueprint, migration

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(blueprint.bp)
app.register_functions(migration.bp)
