from tsav_deploy.cli.main import app

app()
