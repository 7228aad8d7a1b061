import type { Model } from '../api/http';
import { useI18n } from '../i18n/I18n';

interface Props {
  models: readonly Model[];
  value: string;
  onChange: (id: string) => void;
}

export function ModelPicker({ models, value, onChange }: Props) {
  const { t } = useI18n();
  if (models.length === 0) return null;
  return (
    <label className="model-picker">
      <span className="sr-only">{t.model}</span>
      <select data-testid="model" value={value} onChange={(e) => onChange(e.target.value)}>
        {models.map((m) => (
          <option key={m.id} value={m.id}>
            {m.id}
          </option>
        ))}
      </select>
    </label>
  );
}
