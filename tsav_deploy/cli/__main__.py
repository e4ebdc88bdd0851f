from tsav_deploy.cli import app

app()
