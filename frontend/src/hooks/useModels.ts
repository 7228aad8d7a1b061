import { useEffect, useState } from 'react';
import { listModels, type Model } from '../api/http';

const KEY = 'chatstream.model';

/** The node's models and the one the user picked (remembered across reloads). */
export function useModels(): { models: Model[]; model: string; setModel: (id: string) => void } {
  const [models, setModels] = useState<Model[]>([]);
  const [fallback, setFallback] = useState('');
  const [chosen, setChosen] = useState(() => localStorage.getItem(KEY) ?? '');

  useEffect(() => {
    let live = true;
    const load = (attempt: number) => {
      listModels().then(
        (list) => {
          if (!live) return;
          setModels(list.models);
          setFallback(list.default ?? list.models[0]?.id ?? '');
        },
        // The node may still be starting; the picker can wait.
        () => live && setTimeout(() => load(attempt + 1), Math.min(30_000, 1000 * 2 ** attempt)),
      );
    };
    load(0);
    return () => {
      live = false;
    };
  }, []);

  // A remembered model the node no longer offers falls back to its default.
  const model = models.some((m) => m.id === chosen) ? chosen : fallback;
  const setModel = (id: string) => {
    localStorage.setItem(KEY, id);
    setChosen(id);
  };
  return { models, model, setModel };
}
