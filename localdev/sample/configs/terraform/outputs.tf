output "landing_bucket" {
  value = google_storage_bucket.landing.name
}
