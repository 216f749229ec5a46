terraform {
  required_version = ">= 1.5"
  backend "gcs" {
    bucket = "demo-tf-state"
    prefix = "platform"
  }
}

provider "google" {
  project = var.project
  region  = var.region
}

resource "google_storage_bucket" "landing" {
  name     = "${var.project}-landing"
  location = var.region
  versioning {
    enabled = true
  }
}

resource "google_bigquery_dataset" "raw" {
  dataset_id = "raw"
  location   = var.region
}
