project = "demo-prod"
region  = "europe-west1"
