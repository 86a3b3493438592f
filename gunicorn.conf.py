"""Gunicorn settings for Patron; gunicorn reads this file by itself when started in the project
root (`gunicorn -w 4 --access-logfile - 'app:create_app()'`). Command-line options win.

Access lines (written when an access log is asked for, e.g. --access-logfile -) carry no query
strings (searched emails and phone numbers, tracking codes typed into /track), no referrer
query strings and no secrets of survey or tracking links, and end with the request id that the
app's own log lines show. Nothing here sets workers, threads or the address to bind.
"""

import os

from gunicorn.glogging import Logger

from security import loggable_request_line

# What gunicorn itself writes (log and pid files) is its owner's only, like the app's files.
os.umask(0o077)

# Request and response fields that hold a URL; gunicorn's own names for them in a format.
URL_ATOMS = ("r", "U", "f", "{referer}i", "{raw_uri}e", "{request_uri}e", "{http_referer}e", "{path_info}e")


class PatronLogger(Logger):
    """Gunicorn's logger with URLs taken apart before any access line is formatted."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in URL_ATOMS:
            if isinstance(atoms.get(name), str):
                atoms[name] = loggable_request_line(atoms[name])
        atoms["q"] = ""
        atoms.pop("{query_string}e", None)
        return atoms


logger_class = PatronLogger
# Client, user, time, method, path and protocol, status, bytes, milliseconds, user agent, request id.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s" %({x-request-id}o)s'
