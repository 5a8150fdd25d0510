//! Built-in job kinds. Feature modules register their own kinds here too.

pub mod audience;
pub mod collections;
pub mod probe;
pub mod prune;

use super::Registry;

pub fn register_builtin(r: &mut Registry) {
    r.register::<probe::QueueProbe, _, _>(probe::run);
    r.register::<prune::PruneJobs, _, _>(prune::run);
    r.register::<crate::webhooks::process::ProcessWebhook, _, _>(crate::webhooks::process::run);
    r.register::<crate::sending::job::SendMessage, _, _>(crate::sending::job::run);
    r.register::<crate::sending::templates::SyncTemplates, _, _>(
        crate::sending::templates::run_sync,
    );
    r.register::<crate::sending::templates::SyncAllTemplates, _, _>(
        crate::sending::templates::run_sync_all,
    );
    r.register::<audience::CsvImport, _, _>(audience::run_csv_import);
    r.register::<audience::ImportUploadDeadline, _, _>(audience::run_import_upload_deadline);
    r.register::<audience::RefreshSegments, _, _>(audience::run_refresh_segments);
    r.register::<audience::RefreshAllSegments, _, _>(audience::run_refresh_all);
    r.register::<audience::ShopifyWriteBack, _, _>(audience::run_write_back);
    r.register::<collections::SyncCollection, _, _>(collections::run_sync);
    r.register::<collections::ReconcileCollections, _, _>(collections::run_reconcile);
    r.register::<crate::billing::CheckPurchase, _, _>(crate::billing::run_check);
}
