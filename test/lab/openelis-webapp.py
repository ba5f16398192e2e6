"""The lab's stand-in for the OpenELIS webapp container (openelisglobal-webapp): only its health answer.

OpenELIS-Global-2 serves GET /api/OpenELIS-Global/health (src/main/java/org/openelisglobal/common/
controller/HealthController.java: {"status":"UP"}; the context path as install/openelis_healthcheck.sh
asks it) once the webapp has started, and it starts only when it can log in to its database as
clinlims with the password the installer wrote to secrets/datasource.password (install/installerTemplate/
linux/setup_OpenELIS.py, preserve_database_user_password). Here the login is tried at each request;
without it the context is not there: 404, as Tomcat answers for an undeployed context.
Usage: openelis-webapp.py PORT PASSWORD_FILE PSQL
"""
import http.server
import os
import subprocess
import sys

PORT, PASSWORD_FILE, PSQL = int(sys.argv[1]), sys.argv[2], sys.argv[3]
HEALTH = '/api/OpenELIS-Global/health'


def database_login_works():
    try:
        with open(PASSWORD_FILE) as f:
            password = f.read()
    except OSError:
        return False
    env = {'PATH': '/usr/bin:/bin', 'PGPASSWORD': password, 'PGCONNECT_TIMEOUT': '5'}
    r = subprocess.run([PSQL, '-h', '127.0.0.1', '-U', 'clinlims', '-d', 'postgres', '-tAc', 'SELECT 1'],
                       env=env, capture_output=True, timeout=15)
    return r.returncode == 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == HEALTH and database_login_works():
            body, status = b'{"status":"UP"}', 200
        else:
            body, status = b'<!doctype html><title>HTTP Status 404 - Not Found</title>', 404
        self.send_response(status)
        self.send_header('Content-Type', 'application/json' if status == 200 else 'text/html')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.HTTPServer(('0.0.0.0', PORT), Handler).serve_forever()
