-- Neutralise a restored copy so it cannot act on the outside world. An EXAMPLE: edit it
-- for your application (copy the playbooks directory, set `playbook_dir`). Each statement
-- is guarded, so it runs on any tenant's schema.
DO $neutralise$
BEGIN
    -- Outgoing mail: empty the queue and switch the sender off.
    IF to_regclass('public.outgoing_mail') IS NOT NULL THEN
        EXECUTE 'DELETE FROM public.outgoing_mail';
    END IF;
    IF to_regclass('public.mail_settings') IS NOT NULL THEN
        EXECUTE 'UPDATE public.mail_settings SET enabled = false';
    END IF;
    -- Scheduled jobs: none runs from a copy.
    IF to_regclass('public.scheduled_jobs') IS NOT NULL THEN
        EXECUTE 'UPDATE public.scheduled_jobs SET enabled = false';
    END IF;
    -- Webhooks and API keys to other systems.
    IF to_regclass('public.webhooks') IS NOT NULL THEN
        EXECUTE 'DELETE FROM public.webhooks';
    END IF;
END
$neutralise$;
