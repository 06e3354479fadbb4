"""nbgrader's global settings on a kdlab hub: copy to /etc/jupyter/nbgrader_config.py.

Everyone's nbgrader reads this file (learners' Assignments tab, the grader's
formgrader and terminal commands): it names the course and the exchange, the
shared folder through which assignments are released and hand-ins submitted.

    sudo mkdir -p /srv/nbgrader/exchange && sudo chmod 1777 /srv/nbgrader/exchange

The course id must equal COURSE_ID in jupyterhub_config.py (the grader
service is named after it). tests/docs/test_docs.py runs nbgrader's release,
fetch, submit, collect, autograde, feedback and release_feedback through an
exchange with these settings (in a temporary folder, as one user).
"""

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.course_id = "kdlab"
c.Exchange.root = "/srv/nbgrader/exchange"
c.Exchange.timezone = "UTC"     # timestamps of submissions (late penalties, if the course sets any)
