"""Public pages for customers (surveys, feedback, complaint tracking). Never imports `admin`."""

from flask import Blueprint

bp = Blueprint("surveys", __name__, template_folder="../templates/surveys")
